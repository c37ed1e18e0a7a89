package web

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery/static"
)

// redacted replaces a secret in the config view, as Prometheus's
// common/config.Secret marshals itself.
const redacted = "<secret>"

// redactedConfig renders the jobs of cfg, with the SD configs sdhub runs, as
// prometheus.yml YAML with every secret replaced by "<secret>". Two layers
// keep secrets out: config values of type common/config.Secret marshal as
// "<secret>" themselves, and any other non-empty scalar under a key whose
// name says it holds a secret (password, token, credentials, secret, key;
// not the *_file keys, which hold paths) is replaced too.
func redactedConfig(cfg *config.Config) (string, error) {
	jobs := &yaml.Node{Kind: yaml.SequenceNode}
	for _, sc := range cfg.ScrapeConfigs {
		job := &yaml.Node{Kind: yaml.MappingNode}
		job.Content = append(job.Content, scalar("job_name"), scalar(sc.JobName))
		lists := map[string]*yaml.Node{}
		for _, c := range sc.ServiceDiscoveryConfigs {
			key := c.Name() + "_sd_configs"
			var items []any
			if s, ok := c.(static.SDConfig); ok {
				key = "static_configs"
				for _, g := range s {
					items = append(items, g)
				}
			} else {
				items = []any{c}
			}
			list := lists[key]
			if list == nil {
				list = &yaml.Node{Kind: yaml.SequenceNode}
				lists[key] = list
				job.Content = append(job.Content, scalar(key), list)
			}
			for _, it := range items {
				var n yaml.Node
				if err := n.Encode(it); err != nil {
					return "", fmt.Errorf("job %q: %s: %w", sc.JobName, key, err)
				}
				list.Content = append(list.Content, &n)
			}
		}
		jobs.Content = append(jobs.Content, job)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("scrape_configs"), jobs}}
	redactNode(root, false)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// redactNode replaces, in n, the non-empty scalars under secret keys; secret
// says whether n itself is under one.
func redactNode(n *yaml.Node, secret bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		if secret && n.Value != "" && n.Tag != "!!null" {
			n.Value, n.Tag, n.Style = redacted, "!!str", 0
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			redactNode(n.Content[i+1], secret || secretKey(n.Content[i].Value))
		}
	default:
		for _, c := range n.Content {
			redactNode(c, secret)
		}
	}
}

// secretKey reports whether a config key's value is a secret by its name.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_files") {
		return false
	}
	for _, s := range []string{"password", "token", "credentials", "secret", "secrets", "key", "apikey"} {
		if k == s || strings.HasSuffix(k, "_"+s) || strings.HasSuffix(k, s) && s != "key" {
			return true
		}
	}
	return false
}
