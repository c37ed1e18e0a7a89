package consul

import (
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/util/strutil"
)

// The labels Prometheus's consul SD sets (reference section 4.2).
const (
	labelAddress        = model.MetaLabelPrefix + "consul_address"
	labelNode           = model.MetaLabelPrefix + "consul_node"
	labelNodeMeta       = model.MetaLabelPrefix + "consul_metadata_"
	labelServiceMeta    = model.MetaLabelPrefix + "consul_service_metadata_"
	labelTags           = model.MetaLabelPrefix + "consul_tags"
	labelService        = model.MetaLabelPrefix + "consul_service"
	labelHealth         = model.MetaLabelPrefix + "consul_health"
	labelServiceAddress = model.MetaLabelPrefix + "consul_service_address"
	labelServicePort    = model.MetaLabelPrefix + "consul_service_port"
	labelDatacenter     = model.MetaLabelPrefix + "consul_dc"
	labelNamespace      = model.MetaLabelPrefix + "consul_namespace"
	labelPartition      = model.MetaLabelPrefix + "consul_partition"
	labelTaggedAddress  = model.MetaLabelPrefix + "consul_tagged_address_"
	labelServiceID      = model.MetaLabelPrefix + "consul_service_id"
)

// serviceEntry is the part of a /v1/health/service entry (api.ServiceEntry)
// that becomes labels. Decoding only these fields keeps a large catalog's
// reads cheap.
type serviceEntry struct {
	Node struct {
		Node, Address         string
		TaggedAddresses, Meta map[string]string
	}
	Service struct {
		ID, Service, Address, Namespace, Partition string
		Port                                       int
		Tags                                       []string
		Meta                                       map[string]string
		ModifyIndex                                uint64 // not a label: tells a node read what changed
	}
	Checks []entryCheck
}

type entryCheck struct{ CheckID, Status string }

// aggregatedStatus is the instance's status as the consul api library's
// HealthChecks.AggregatedStatus computes it, without building its types:
// "" if a check other than a maintenance one has an unknown status, else
// maintenance (a node or service maintenance check) > critical > warning >
// passing, and passing without checks.
func aggregatedStatus(checks []entryCheck) string {
	var maintenance, critical, warning bool
	for _, c := range checks {
		if c.CheckID == api.NodeMaint || strings.HasPrefix(c.CheckID, api.ServiceMaintPrefix) {
			maintenance = true
			continue
		}
		switch c.Status {
		case api.HealthPassing:
		case api.HealthWarning:
			warning = true
		case api.HealthCritical:
			critical = true
		default:
			return ""
		}
	}
	switch {
	case maintenance:
		return api.HealthMaint
	case critical:
		return api.HealthCritical
	case warning:
		return api.HealthWarning
	}
	return api.HealthPassing
}

// serviceGroup turns one service's health entries into its target group:
// Source and group labels name the service and datacenter, and each
// instance is a target with its own labels.
func serviceGroup(name, dc, sep string, entries []serviceEntry) *targetgroup.Group {
	g := &targetgroup.Group{
		Source: name,
		Labels: model.LabelSet{
			labelService:    model.LabelValue(name),
			labelDatacenter: model.LabelValue(dc),
		},
		Targets: make([]model.LabelSet, 0, len(entries)),
	}
	for i := range entries {
		g.Targets = append(g.Targets, instanceLabels(&entries[i], sep))
	}
	return g
}

// instanceLabels are one instance's labels. The address is the service
// address when set, else the node's; tags are joined with the separator and
// wrapped in it so a regex need not care where a tag sits.
func instanceLabels(e *serviceEntry, sep string) model.LabelSet {
	host := e.Service.Address
	if host == "" {
		host = e.Node.Address
	}
	port := strconv.Itoa(e.Service.Port)
	ls := model.LabelSet{
		model.AddressLabel:  model.LabelValue(net.JoinHostPort(host, port)),
		labelAddress:        model.LabelValue(e.Node.Address),
		labelNode:           model.LabelValue(e.Node.Node),
		labelNamespace:      model.LabelValue(e.Service.Namespace),
		labelPartition:      model.LabelValue(e.Service.Partition),
		labelTags:           model.LabelValue(sep + strings.Join(e.Service.Tags, sep) + sep),
		labelServiceAddress: model.LabelValue(e.Service.Address),
		labelServicePort:    model.LabelValue(port),
		labelServiceID:      model.LabelValue(e.Service.ID),
		labelHealth:         model.LabelValue(aggregatedStatus(e.Checks)),
	}
	addSanitized(ls, labelNodeMeta, e.Node.Meta)
	addSanitized(ls, labelServiceMeta, e.Service.Meta)
	addSanitized(ls, labelTaggedAddress, e.Node.TaggedAddresses)
	return ls
}

// addSanitized adds m under prefix with sanitised keys. Keys that sanitise
// to the same name ("a.b", "a-b") are added in sorted order, so the last
// one wins every time: in map order the value would change from one
// refresh to the next and the job's file with it.
func addSanitized(ls model.LabelSet, prefix string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ls[model.LabelName(prefix+strutil.SanitizeLabelName(k))] = model.LabelValue(m[k])
	}
}
