package web

import (
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	commonconfig "github.com/prometheus/common/config"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/promsd"
)

// TestRedactPrometheusMechanisms plants a secret in every config.Secret
// (and every URL's password) of every mechanism sdhub runs with
// Prometheus's code, nested HTTP client settings included, and checks that
// the status page's config view shows none of them.
func TestRedactPrometheusMechanisms(t *testing.T) {
	cfg := &config.Config{}
	planted := 0
	for _, m := range config.Mechanisms {
		c, ok := m.NewConfig().(*promsd.SDConfig)
		if !ok {
			continue // native: covered by the status page tests
		}
		plant(reflect.ValueOf(c.Config), &planted, 0)
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, &config.ScrapeConfig{
			JobName: m.Name, ServiceDiscoveryConfigs: discovery.Configs{c},
		})
	}
	if planted < 50 {
		t.Fatalf("planted %d secrets in %d mechanisms, want many more", planted, len(cfg.ScrapeConfigs))
	}
	out, err := redactedConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if leaks := regexp.MustCompile(`planted-\d+`).FindAllString(out, -1); len(leaks) > 0 {
		t.Fatalf("%d of %d planted secrets shown, e.g. %q:\n%s", len(leaks), planted, leaks[0], out)
	}
	for _, m := range cfg.ScrapeConfigs {
		if !strings.Contains(out, m.JobName+"_sd_configs:") {
			t.Errorf("the view lacks %s_sd_configs", m.JobName)
		}
	}
}

var (
	secretType = reflect.TypeFor[commonconfig.Secret]()
	urlType    = reflect.TypeFor[url.URL]()
)

// standard reports whether t is a type of Go's standard library.
func standard(t reflect.Type) bool {
	first, _, _ := strings.Cut(t.PkgPath(), "/")
	return !strings.Contains(first, ".")
}

// plant sets every secret reachable from v to a distinct "planted-N",
// allocating nil structs and one entry of nil maps on the way.
func plant(v reflect.Value, n *int, depth int) {
	if depth > 8 {
		return
	}
	secret := func() string {
		*n++
		return fmt.Sprintf("planted-%d", *n)
	}
	switch v.Kind() {
	case reflect.Pointer:
		// Config structs only: the standard library's (say a test-only
		// *http.Client field, nil in every decoded config) are no config.
		if el := v.Type().Elem(); v.IsNil() && v.CanSet() && el.Kind() == reflect.Struct && (!standard(el) || el == urlType) {
			v.Set(reflect.New(el))
		}
		if !v.IsNil() {
			plant(v.Elem(), n, depth+1)
		}
	case reflect.Struct:
		if v.Type() == urlType {
			v.Set(reflect.ValueOf(url.URL{Scheme: "http", Host: "proxy.example:3128", User: url.UserPassword("u", secret())}))
			return
		}
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				plant(f, n, depth+1)
			}
		}
	case reflect.String:
		if v.Type() == secretType {
			v.SetString(secret())
		}
	case reflect.Slice:
		if v.Type().Elem() == secretType {
			v.Set(reflect.ValueOf([]commonconfig.Secret{commonconfig.Secret(secret())}))
		}
	case reflect.Map:
		if v.IsNil() && v.CanSet() && v.Type().Key().Kind() == reflect.String {
			m := reflect.MakeMap(v.Type())
			e := reflect.New(v.Type().Elem()).Elem()
			plant(e, n, depth+1)
			m.SetMapIndex(reflect.ValueOf("X-Planted").Convert(v.Type().Key()), e)
			v.Set(m)
		}
	}
}
