package discovery

import "github.com/prometheus/client_golang/prometheus"

// Mechanism describes one SD mechanism to the config loader and the manager.
// The list of mechanisms sdhub implements lives in package config.
type Mechanism struct {
	// Name is the mechanism name; its YAML key is Name+"_sd_configs".
	Name string
	// NewConfig returns a fresh config; decoding YAML into it applies the defaults.
	NewConfig func() Config
	// NewMetrics makes and registers the mechanism's metrics, once per process.
	// Nil for mechanisms without metrics of their own.
	NewMetrics func(reg prometheus.Registerer, refresh *RefreshMetrics) (Metrics, error)
	// Warnings, if set, checks the mechanism's configs of a whole file
	// together (every job's, in file order) and returns what the loader
	// should warn about.
	Warnings func(configs []Config) []string
}

// Key is the YAML key of the mechanism's config list.
func (m Mechanism) Key() string { return m.Name + "_sd_configs" }
