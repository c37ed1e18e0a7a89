package discovery

import (
	"bytes"
	"errors"
	"testing"

	"gopkg.in/yaml.v3"
)

type testConf struct {
	Role string `yaml:"role"`
	Port int    `yaml:"port"`
}

func (c *testConf) UnmarshalYAML(unmarshal func(any) error) error {
	*c = testConf{Role: "tasks", Port: 80}
	type plain testConf
	return UnmarshalConfig(unmarshal, (*plain)(c), func() error {
		if c.Role != "tasks" {
			return Fieldf("role", "invalid role %q", c.Role)
		}
		return nil
	})
}

func decodeStrict(t *testing.T, in string) ([]*testConf, error) {
	t.Helper()
	var out struct {
		Confs []*testConf `yaml:"confs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(in)))
	dec.KnownFields(true)
	err := dec.Decode(&out)
	return out.Confs, err
}

func TestUnmarshalConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
		want          testConf
	}{
		{name: "defaults", in: "confs:\n- {}\n", want: testConf{Role: "tasks", Port: 80}},
		{name: "set", in: "confs:\n- port: 9\n", want: testConf{Role: "tasks", Port: 9}},
		{name: "unknown key", in: "confs:\n- port: 9\n  rol: x\n", err: "yaml: unmarshal errors:\n  line 3: field rol not found in type discovery.plain"},
		{name: "invalid field", in: "confs:\n- port: 9\n\n  role: taks\n", err: `line 4: invalid role "taks"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeStrict(t, tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				var le *LineError
				if tc.name == "invalid field" && !errors.As(err, &le) {
					t.Fatalf("error %T is not a *LineError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || *got[0] != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

type durConf struct {
	D badScalar `yaml:"d"`
}

// badScalar fails to decode the way model.Duration does: with a plain error.
type badScalar struct{}

func (*badScalar) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	return errors.New(`not a valid duration string: "` + s + `"`)
}

func (c *durConf) UnmarshalYAML(unmarshal func(any) error) error {
	type plain durConf
	return UnmarshalConfig(unmarshal, (*plain)(c), nil)
}

func TestUnmarshalConfigPlacesFieldErrors(t *testing.T) {
	var out struct {
		C []*durConf `yaml:"c"`
	}
	err := yaml.Unmarshal([]byte("c:\n\n  - d: 5\n"), &out)
	if err == nil || err.Error() != `line 3: not a valid duration string: "5"` {
		t.Fatalf("error = %v", err)
	}
}
