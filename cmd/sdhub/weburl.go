package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	toolkitweb "github.com/prometheus/exporter-toolkit/web"
	"gopkg.in/yaml.v3"
)

// externalURL is --web.external-url as Prometheus makes it: when empty,
// http://<hostname>:<port>/ with the port sdhub listens on (https when the
// web config file turns TLS on); the path without its trailing slash.
func externalURL(raw, listenAddr, webConfigFile string) (*url.URL, error) {
	if raw == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		_, port, err := net.SplitHostPort(listenAddr)
		if err != nil {
			return nil, err
		}
		scheme := "http"
		if tlsEnabled(webConfigFile) {
			scheme = "https"
		}
		raw = fmt.Sprintf("%s://%s/", scheme, net.JoinHostPort(host, port))
	}
	if strings.HasPrefix(raw, `"`) || strings.HasPrefix(raw, "'") || strings.HasSuffix(raw, `"`) || strings.HasSuffix(raw, "'") {
		return nil, errors.New("URL must not begin or end with quotes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if u.Path != "" && !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	u.RawPath = ""
	return u, nil
}

// tlsEnabled reports whether the web config file turns TLS on; an empty
// path or a file that does not parse does not (checkWebConfig reports the
// latter).
func tlsEnabled(webConfigFile string) bool {
	if webConfigFile == "" {
		return false
	}
	data, err := os.ReadFile(webConfigFile)
	if err != nil {
		return false
	}
	var c toolkitweb.Config
	if err := yaml.Unmarshal(data, &c); err != nil {
		return false
	}
	return c.TLSConfig.IsEnabled()
}
