package swarm

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/docker/docker/api/types/swarm"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Task labels, named as in Prometheus.
const (
	labelTaskID               = metaPrefix + "task_id"
	labelTaskDesiredState     = metaPrefix + "task_desired_state"
	labelTaskState            = metaPrefix + "task_state"
	labelTaskSlot             = metaPrefix + "task_slot"
	labelTaskContainerID      = metaPrefix + "task_container_id"
	labelTaskPortPublishMode  = metaPrefix + "task_port_publish_mode"
	labelContainerLabelPrefix = metaPrefix + "container_label_"
)

// refreshTasks gives, for every task (old ones included: relabelling keeps
// the running ones), one target per TCP port published in host mode on the
// node's address, and one target per network attachment address and TCP
// port the service publishes, or per attachment address on the configured
// port when the service publishes no TCP port. The service, node and
// network lookups are not filtered.
func (d *Discovery) refreshTasks(ctx context.Context) (*targetgroup.Group, error) {
	tasks, err := d.client.TaskList(ctx, swarm.TaskListOptions{Filters: d.filters})
	if err != nil {
		return nil, fmt.Errorf("error while listing swarm tasks: %w", err)
	}
	services, err := d.client.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, fmt.Errorf("error while computing services labels and ports: %w", err)
	}
	svcLabels := make(map[string]model.LabelSet, len(services))
	svcPorts := make(map[string][]swarm.PortConfig, len(services))
	for _, s := range services {
		svcLabels[s.ID] = serviceLabels(s)
		svcPorts[s.ID] = s.Endpoint.Ports
	}
	nodes, err := d.nodeLabels(ctx)
	if err != nil {
		return nil, fmt.Errorf("error while computing nodes labels and ports: %w", err)
	}
	networks, err := d.networkLabels(ctx)
	if err != nil {
		return nil, fmt.Errorf("error while computing swarm network labels: %w", err)
	}

	tg := &targetgroup.Group{Source: source}
	for _, task := range tasks {
		common := model.LabelSet{
			labelTaskID:           model.LabelValue(task.ID),
			labelTaskDesiredState: model.LabelValue(task.DesiredState),
			labelTaskState:        model.LabelValue(task.Status.State),
			labelTaskSlot:         model.LabelValue(strconv.Itoa(task.Slot)),
		}
		if cs := task.Status.ContainerStatus; cs != nil {
			common[labelTaskContainerID] = model.LabelValue(cs.ContainerID)
		}
		if cs := task.Spec.ContainerSpec; cs != nil {
			addLabels(common, labelContainerLabelPrefix, cs.Labels)
		}
		common = common.Merge(svcLabels[task.ServiceID]).Merge(nodes[task.NodeID])

		for _, p := range task.Status.PortStatus.Ports {
			if p.Protocol != swarm.PortConfigProtocolTCP {
				continue
			}
			t := common.Merge(model.LabelSet{labelTaskPortPublishMode: model.LabelValue(p.PublishMode)})
			t[model.AddressLabel] = hostPort(string(common[labelNodeAddress]), uint64(p.PublishedPort))
			tg.Targets = append(tg.Targets, t)
		}

		for _, att := range task.NetworksAttachments {
			perNetwork := common.Merge(networks[att.Network.ID])
			for _, addr := range att.Addresses {
				ip, _, err := net.ParseCIDR(addr)
				if err != nil {
					return nil, fmt.Errorf("error while parsing address %s: %w", addr, err)
				}
				added := false
				for _, p := range svcPorts[task.ServiceID] {
					if p.Protocol != swarm.PortConfigProtocolTCP {
						continue
					}
					t := perNetwork.Merge(model.LabelSet{labelTaskPortPublishMode: model.LabelValue(p.PublishMode)})
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
	}
	return tg, nil
}
