package file

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/configtest"
)

func decodeConfig(b []byte) (*SDConfig, error) {
	c := Mechanism.NewConfig().(*SDConfig)
	return c, configtest.Strict(b, c)
}

func TestConfigFiles(t *testing.T) {
	dflt := DefaultSDConfig.RefreshInterval
	good := map[string]SDConfig{
		"minimal.good.yml": {Files: []string{"targets/*.json"}, RefreshInterval: dflt},
		"full.good.yml": {
			Files:           []string{"/etc/sd/*.json", "nodes-*.yml", "static.yaml", "UPPER/*.JSON", "a/b/c.YML", "x*.YAML"},
			RefreshInterval: model.Duration(30 * time.Second),
		},
		"two-stars-last-segment.good.yml": {Files: []string{"targets/*nodes*.json"}, RefreshInterval: dflt},
	}
	bad := map[string]string{
		"no-files.bad.yml":         "line 1: file service discovery config must contain at least one path name",
		"empty-files.bad.yml":      "line 2: file service discovery config must contain at least one path name",
		"bad-extension.bad.yml":    `line 1: path name "targets/*.txt" is not valid for file discovery`,
		"star-in-dir.bad.yml":      `line 1: path name "targets/*/nodes.json" is not valid for file discovery`,
		"bad-glob.bad.yml":         `line 1: path name "targets/[a.json" is not valid for file discovery: syntax error in pattern`,
		"zero-interval.bad.yml":    `line 3: invalid refresh_interval "0s" for file_sd_configs (must be greater than 0s)`,
		"interval-no-unit.bad.yml": `line 1: not a valid duration string: "5"`,
		"unknown-key.bad.yml":      "yaml: unmarshal errors:\n  line 1: field file not found in type file.plain",
		"files-not-list.bad.yml":   "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `targets...` into []string",
	}
	configtest.Table[SDConfig]{Good: good, Bad: bad, Decode: func(_ *testing.T, b []byte) (SDConfig, error) {
		c, err := decodeConfig(b)
		return *c, err
	}}.Run(t)
}

func TestValidateFieldErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     SDConfig
		field string
	}{
		{"no files", SDConfig{RefreshInterval: DefaultSDConfig.RefreshInterval}, "files"},
		{"bad name", SDConfig{Files: []string{"a.txt"}, RefreshInterval: DefaultSDConfig.RefreshInterval}, "files"},
		{"zero interval", SDConfig{Files: []string{"a.json"}}, "refresh_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fe *discovery.FieldError
			if err := tc.c.Validate(); !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate() = %v, want a FieldError for %q", err, tc.field)
			}
			if _, err := NewDiscovery(&tc.c, discovery.Options{}); err == nil {
				t.Fatal("NewDiscovery accepted an invalid config")
			}
		})
	}
}

func TestSetDirectory(t *testing.T) {
	abs := filepath.Join(string(filepath.Separator), "etc", "sd", "*.json")
	c := SDConfig{Files: []string{"targets/*.json", abs, "./x.yml"}}
	c.SetDirectory(filepath.Join("conf", "dir"))
	want := []string{filepath.Join("conf", "dir", "targets", "*.json"), abs, filepath.Join("conf", "dir", "x.yml")}
	if !reflect.DeepEqual(c.Files, want) {
		t.Fatalf("Files = %q, want %q", c.Files, want)
	}
}

func TestMechanism(t *testing.T) {
	if Mechanism.Name != "file" || Mechanism.Key() != "file_sd_configs" || Mechanism.NewConfig().Name() != "file" {
		t.Fatalf("mechanism names: %q %q %q", Mechanism.Name, Mechanism.Key(), Mechanism.NewConfig().Name())
	}
	// Equal configs must compare equal: the manager keeps providers by DeepEqual.
	a, _ := decodeConfig([]byte("files: [a/*.json]\n"))
	b, _ := decodeConfig([]byte("files: [a/*.json]\nrefresh_interval: 5m\n"))
	if !reflect.DeepEqual(discovery.Config(a), discovery.Config(b)) {
		t.Fatal("equal configs are not DeepEqual")
	}
	if _, err := NewDiscovery(a, discovery.Options{Metrics: fakeMetrics{}}); err == nil ||
		err.Error() != "invalid metrics type file.fakeMetrics for file_sd_configs (want *file.Metrics)" {
		t.Fatalf("foreign metrics: error = %v", err)
	}
}

type fakeMetrics struct{}

func (fakeMetrics) Unregister() {}
