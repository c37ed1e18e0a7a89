package swarm

import (
	"context"
	"fmt"
	"strconv"

	"github.com/docker/docker/api/types/swarm"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Node labels, named as in Prometheus.
const (
	labelNodeID                   = metaPrefix + "node_id"
	labelNodeRole                 = metaPrefix + "node_role"
	labelNodeAddress              = metaPrefix + "node_address"
	labelNodeAvailability         = metaPrefix + "node_availability"
	labelNodeHostname             = metaPrefix + "node_hostname"
	labelNodePlatformArchitecture = metaPrefix + "node_platform_architecture"
	labelNodePlatformOS           = metaPrefix + "node_platform_os"
	labelNodeStatus               = metaPrefix + "node_status"
	labelNodeEngineVersion        = metaPrefix + "node_engine_version"
	labelNodeManagerLeader        = metaPrefix + "node_manager_leader"
	labelNodeManagerReachability  = metaPrefix + "node_manager_reachability"
	labelNodeManagerAddress       = metaPrefix + "node_manager_address"
	labelNodeLabelPrefix          = metaPrefix + "node_label_"
)

// refreshNodes gives one target per node: its address on the configured port.
func (d *Discovery) refreshNodes(ctx context.Context) (*targetgroup.Group, error) {
	nodes, err := d.client.NodeList(ctx, swarm.NodeListOptions{Filters: d.filters})
	if err != nil {
		return nil, fmt.Errorf("error while listing swarm nodes: %w", err)
	}
	tg := &targetgroup.Group{Source: source}
	for _, n := range nodes {
		t := nodeLabels(n)
		t[labelNodeEngineVersion] = model.LabelValue(n.Description.Engine.EngineVersion)
		if ms := n.ManagerStatus; ms != nil {
			t[labelNodeManagerLeader] = model.LabelValue(strconv.FormatBool(ms.Leader))
			t[labelNodeManagerReachability] = model.LabelValue(ms.Reachability)
			t[labelNodeManagerAddress] = model.LabelValue(ms.Addr)
		}
		t[model.AddressLabel] = hostPort(n.Status.Addr, uint64(d.port))
		tg.Targets = append(tg.Targets, t)
	}
	return tg, nil
}

// nodeLabels are the labels of a node that the nodes and tasks roles share.
func nodeLabels(n swarm.Node) model.LabelSet {
	ls := model.LabelSet{
		labelNodeID:                   model.LabelValue(n.ID),
		labelNodeRole:                 model.LabelValue(n.Spec.Role),
		labelNodeAddress:              model.LabelValue(n.Status.Addr),
		labelNodeAvailability:         model.LabelValue(n.Spec.Availability),
		labelNodeHostname:             model.LabelValue(n.Description.Hostname),
		labelNodePlatformArchitecture: model.LabelValue(n.Description.Platform.Architecture),
		labelNodePlatformOS:           model.LabelValue(n.Description.Platform.OS),
		labelNodeStatus:               model.LabelValue(n.Status.State),
	}
	addLabels(ls, labelNodeLabelPrefix, n.Spec.Labels)
	return ls
}

// nodeLabels lists every node (unfiltered) and returns its labels by ID.
func (d *Discovery) nodeLabels(ctx context.Context) (map[string]model.LabelSet, error) {
	nodes, err := d.client.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("error while listing swarm nodes: %w", err)
	}
	out := make(map[string]model.LabelSet, len(nodes))
	for _, n := range nodes {
		out[n.ID] = nodeLabels(n)
	}
	return out, nil
}
