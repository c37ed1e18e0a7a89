package static

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/configtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// decodeGroups decodes a static_configs list the way the config loader
// does: yaml.v3, unknown keys rejected.
func decodeGroups(b []byte) ([]*targetgroup.Group, error) {
	var groups []*targetgroup.Group
	err := configtest.Strict(b, &groups)
	return groups, err
}

func addr(a string) model.LabelSet { return model.LabelSet{model.AddressLabel: model.LabelValue(a)} }

func TestConfigFiles(t *testing.T) {
	good := map[string]SDConfig{
		"two-groups.good.yml": {
			{
				Targets: []model.LabelSet{addr("a.example:9100"), addr("b.example:9100")},
				Labels:  model.LabelSet{"env": "prod", "team": "infra"},
				Source:  "0",
			},
			{Targets: []model.LabelSet{addr("[2001:db8::1]:9100")}, Source: "1"},
		},
		"empty-targets.good.yml": {
			{Targets: []model.LabelSet{}, Labels: model.LabelSet{"env": "dev"}, Source: "0"},
			{Targets: []model.LabelSet{}, Source: "1"},
		},
	}
	bad := map[string]string{
		"unknown-key.bad.yml":      "yaml: unmarshal errors:\n  line 2: field label not found in type struct { Targets []string \"yaml:\\\"targets\\\"\"; Labels model.LabelSet \"yaml:\\\"labels\\\"\" }",
		"bad-label-name.bad.yml":   `"" is not a valid label name`,
		"targets-not-list.bad.yml": "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `a.examp...` into []string",
	}
	show := func(c SDConfig) string { return dump(c) }
	configtest.Table[SDConfig]{Good: good, Bad: bad, Show: show, Decode: func(_ *testing.T, b []byte) (SDConfig, error) {
		groups, err := decodeGroups(b)
		if err != nil {
			return nil, err
		}
		return FromGroups(groups), nil
	}}.Run(t)
}

func dump(gs []*targetgroup.Group) string {
	var b strings.Builder
	for _, g := range gs {
		b.WriteString(g.Source + ":" + g.Labels.String())
		for _, t := range g.Targets {
			b.WriteString(" " + t.String())
		}
		b.WriteString("; ")
	}
	return b.String()
}

func TestConfig(t *testing.T) {
	c := FromGroups([]*targetgroup.Group{{Targets: []model.LabelSet{addr("a:1")}}})
	if c.Name() != "static" {
		t.Fatalf("Name() = %q", c.Name())
	}
	// Equal group lists must compare equal, so the manager shares and keeps providers.
	d := FromGroups([]*targetgroup.Group{{Targets: []model.LabelSet{addr("a:1")}}})
	if !reflect.DeepEqual(c, d) {
		t.Fatal("equal static configs are not DeepEqual")
	}
}

func TestRun(t *testing.T) {
	c := FromGroups([]*targetgroup.Group{
		{Targets: []model.LabelSet{addr("a:1")}, Labels: model.LabelSet{"env": "prod"}},
		{Targets: []model.LabelSet{addr("b:2"), addr("c:3")}},
	})
	want := dump(c)
	d, err := c.NewDiscoverer(discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	up := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, up)
	}()

	var got []*targetgroup.Group
	select {
	case got = <-up:
	case <-time.After(5 * time.Second):
		t.Fatal("no first message within 5s")
	}
	if !reflect.DeepEqual(got, []*targetgroup.Group(c)) {
		t.Fatalf("first message %v, want %v", dump(got), want)
	}
	// The receiver owns what it got: changing it must not change the config.
	got[0].Labels["env"] = "changed"
	got[1].Targets[0][model.AddressLabel] = "changed:1"
	if dump(c) != want {
		t.Fatalf("config changed through the message: %v", dump(c))
	}

	select {
	case <-done:
		t.Fatal("Run returned before ctx was done")
	default:
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	select {
	case _, ok := <-up:
		if !ok {
			t.Fatal("Run closed the channel")
		}
		t.Fatal("Run sent a second message")
	default:
	}
}

func TestRunCancelledBeforeSend(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewDiscovery(FromGroups([]*targetgroup.Group{{}})).Run(ctx, make(chan []*targetgroup.Group))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run blocked on a send after ctx was done")
	}
}
