package consul

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

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
	Node    entryNode
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
func (c *nameCache) serviceGroup(name, dc, sep string, entries []serviceEntry) *targetgroup.Group {
	g := &targetgroup.Group{
		Source: name,
		Labels: model.LabelSet{
			labelService:    model.LabelValue(name),
			labelDatacenter: model.LabelValue(dc),
		},
		Targets: make([]model.LabelSet, 0, len(entries)),
	}
	for i := range entries {
		g.Targets = append(g.Targets, c.instanceLabels(&entries[i], sep))
	}
	return g
}

// entryNode is the part of a node that becomes labels.
type entryNode struct {
	Node, Address         string
	TaggedAddresses, Meta map[string]string
}

// instanceLabels are one instance's labels. The address is the service
// address when set, else the node's; tags are joined with the separator and
// wrapped in it so a regex need not care where a tag sits.
func (c *nameCache) instanceLabels(e *serviceEntry, sep string) model.LabelSet {
	ls := make(model.LabelSet, 10+len(e.Service.Meta)+len(e.Node.Meta)+len(e.Node.TaggedAddresses))
	ls[labelNode] = model.LabelValue(e.Node.Node)
	ls[labelNamespace] = model.LabelValue(e.Service.Namespace)
	ls[labelPartition] = model.LabelValue(e.Service.Partition)
	ls[labelTags] = model.LabelValue(sep + strings.Join(e.Service.Tags, sep) + sep)
	ls[labelServiceAddress] = model.LabelValue(e.Service.Address)
	ls[labelServicePort] = model.LabelValue(strconv.Itoa(e.Service.Port))
	ls[labelServiceID] = model.LabelValue(e.Service.ID)
	ls[labelHealth] = model.LabelValue(aggregatedStatus(e.Checks))
	c.addSanitized(ls, labelServiceMeta, e.Service.Meta)
	c.setNodeLabels(ls, &e.Node)
	return ls
}

// setNodeLabels sets the labels that come from the instance's node, on
// labels that already have the service's and none of another version of
// the node: the node's address (and __address__ when the service has none
// of its own), its metadata and its tagged addresses.
func (c *nameCache) setNodeLabels(ls model.LabelSet, n *entryNode) {
	host := string(ls[labelServiceAddress])
	if host == "" {
		host = n.Address
	}
	ls[model.AddressLabel] = model.LabelValue(net.JoinHostPort(host, string(ls[labelServicePort])))
	ls[labelAddress] = model.LabelValue(n.Address)
	c.addSanitized(ls, labelNodeMeta, n.Meta)
	c.addSanitized(ls, labelTaggedAddress, n.TaggedAddresses)
}

// withNode returns g with the node-derived labels of its targets on node n
// set anew from n, or g itself when none of its targets is on n.
func (c *nameCache) withNode(g *targetgroup.Group, n *entryNode) *targetgroup.Group {
	var out *targetgroup.Group
	for i, t := range g.Targets {
		if string(t[labelNode]) != n.Node {
			continue
		}
		if out == nil {
			out = &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: slices.Clone(g.Targets)}
		}
		ls := t.Clone()
		for name := range ls {
			if strings.HasPrefix(string(name), labelNodeMeta) || strings.HasPrefix(string(name), labelTaggedAddress) {
				delete(ls, name)
			}
		}
		c.setNodeLabels(ls, n)
		out.Targets[i] = ls
	}
	if out == nil {
		return g
	}
	return out
}

// addSanitized adds m under prefix with sanitised keys. Keys that sanitise
// to the same name ("a.b", "a-b") are added in sorted order, so the last
// one wins every time: in map order the value would change from one
// refresh to the next and the job's file with it.
func (c *nameCache) addSanitized(ls model.LabelSet, prefix string, m map[string]string) {
	if len(m) == 1 {
		for k, v := range m {
			ls[c.name(prefix, k)] = model.LabelValue(v)
		}
		return
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ls[c.name(prefix, k)] = model.LabelValue(m[k])
	}
}

type nameKey struct{ prefix, key string }

// nameCache remembers the label name of each prefix and metadata key: the
// same few keys come with every instance, and sanitising one takes a
// regular expression and two allocations. Each Discovery has its own; the
// functions that make labels are its methods.
type nameCache struct {
	mu    sync.RWMutex
	names map[nameKey]model.LabelName
}

func newNameCache() *nameCache { return &nameCache{names: map[nameKey]model.LabelName{}} }

// maxCachedNames bounds the cache; past it names are made each time.
const maxCachedNames = 10000

func (c *nameCache) name(prefix, key string) model.LabelName {
	k := nameKey{prefix, key}
	c.mu.RLock()
	n, ok := c.names[k]
	c.mu.RUnlock()
	if ok {
		return n
	}
	n = model.LabelName(prefix + strutil.SanitizeLabelName(key))
	c.mu.Lock()
	if len(c.names) < maxCachedNames {
		c.names[k] = n
	}
	c.mu.Unlock()
	return n
}
