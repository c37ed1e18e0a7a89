package swarm

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/util/strutil"
)

// Service and network labels, named as in Prometheus.
const (
	labelServiceID                = metaPrefix + "service_id"
	labelServiceName              = metaPrefix + "service_name"
	labelServiceMode              = metaPrefix + "service_mode"
	labelServiceLabelPrefix       = metaPrefix + "service_label_"
	labelServiceUpdatingStatus    = metaPrefix + "service_updating_status"
	labelServiceContainerHostname = metaPrefix + "service_task_container_hostname"
	labelServiceContainerImage    = metaPrefix + "service_task_container_image"
	labelServicePortName          = metaPrefix + "service_endpoint_port_name"
	labelServicePortPublishMode   = metaPrefix + "service_endpoint_port_publish_mode"

	labelNetworkID          = metaPrefix + "network_id"
	labelNetworkName        = metaPrefix + "network_name"
	labelNetworkScope       = metaPrefix + "network_scope"
	labelNetworkInternal    = metaPrefix + "network_internal"
	labelNetworkIngress     = metaPrefix + "network_ingress"
	labelNetworkLabelPrefix = metaPrefix + "network_label_"
)

// refreshServices gives one target per virtual IP (one per network the
// service is attached to) and TCP published port, or per virtual IP on
// the configured port when the service publishes no TCP port. Services in
// dnsrr endpoint mode have no virtual IP and give no target.
func (d *Discovery) refreshServices(ctx context.Context) (*targetgroup.Group, error) {
	services, err := d.client.ServiceList(ctx, swarm.ServiceListOptions{Filters: d.filters})
	if err != nil {
		return nil, fmt.Errorf("error while listing swarm services: %w", err)
	}
	networks, err := d.networkLabels(ctx)
	if err != nil {
		return nil, fmt.Errorf("error while computing swarm network labels: %w", err)
	}
	tg := &targetgroup.Group{Source: source}
	for _, s := range services {
		common := serviceLabels(s)
		if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
			common[labelServiceContainerHostname] = model.LabelValue(cs.Hostname)
			common[labelServiceContainerImage] = model.LabelValue(cs.Image)
		}
		if s.UpdateStatus != nil {
			common[labelServiceUpdatingStatus] = model.LabelValue(s.UpdateStatus.State)
		}
		for _, vip := range s.Endpoint.VirtualIPs {
			ip, _, err := net.ParseCIDR(vip.Addr)
			if err != nil {
				return nil, fmt.Errorf("error while parsing address %s: %w", vip.Addr, err)
			}
			perNetwork := common.Merge(networks[vip.NetworkID])
			added := false
			for _, p := range s.Endpoint.Ports {
				if p.Protocol != swarm.PortConfigProtocolTCP {
					continue
				}
				t := perNetwork.Merge(model.LabelSet{
					labelServicePortName:        model.LabelValue(p.Name),
					labelServicePortPublishMode: model.LabelValue(p.PublishMode),
				})
				t[model.AddressLabel] = hostPort(ip.String(), uint64(p.PublishedPort))
				tg.Targets = append(tg.Targets, t)
				added = true
			}
			if !added {
				t := perNetwork.Clone()
				t[model.AddressLabel] = hostPort(ip.String(), uint64(d.port))
				tg.Targets = append(tg.Targets, t)
			}
		}
	}
	return tg, nil
}

// serviceLabels are the labels of a service that the services and tasks
// roles share: id, name, mode and the service's own labels.
func serviceLabels(s swarm.Service) model.LabelSet {
	ls := model.LabelSet{
		labelServiceID:   model.LabelValue(s.ID),
		labelServiceName: model.LabelValue(s.Spec.Name),
		labelServiceMode: model.LabelValue(serviceMode(s)),
	}
	addLabels(ls, labelServiceLabelPrefix, s.Spec.Labels)
	return ls
}

func serviceMode(s swarm.Service) string {
	switch {
	case s.Spec.Mode.Global != nil:
		return "global"
	case s.Spec.Mode.Replicated != nil:
		return "replicated"
	}
	return ""
}

// networkLabels lists every network (unfiltered) and returns its labels by ID.
func (d *Discovery) networkLabels(ctx context.Context) (map[string]model.LabelSet, error) {
	nets, err := d.client.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]model.LabelSet, len(nets))
	for _, n := range nets {
		ls := model.LabelSet{
			labelNetworkID:       model.LabelValue(n.ID),
			labelNetworkName:     model.LabelValue(n.Name),
			labelNetworkScope:    model.LabelValue(n.Scope),
			labelNetworkInternal: model.LabelValue(strconv.FormatBool(n.Internal)),
			labelNetworkIngress:  model.LabelValue(strconv.FormatBool(n.Ingress)),
		}
		addLabels(ls, labelNetworkLabelPrefix, n.Labels)
		out[n.ID] = ls
	}
	return out, nil
}

// addLabels adds Docker object labels under prefix, their keys sanitised
// as Prometheus does (every character outside [a-zA-Z0-9_] becomes _).
// Keys that sanitise to the same name ("com.x", "com_x") are added in
// sorted order, so the last one wins every time: in map order the value
// would change from one refresh to the next and the job's file with it.
func addLabels(ls model.LabelSet, prefix string, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		ls[model.LabelName(prefix+strutil.SanitizeLabelName(k))] = model.LabelValue(labels[k])
	}
}

func hostPort(host string, port uint64) model.LabelValue {
	return model.LabelValue(net.JoinHostPort(host, strconv.FormatUint(port, 10)))
}
