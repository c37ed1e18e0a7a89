package main

import (
	"log/slog"
	"net"
	"net/http"

	toolkitweb "github.com/prometheus/exporter-toolkit/web"
)

// checkWebConfig validates the --web.config.file (TLS and basic
// authentication in exporter-toolkit's format, as Prometheus and its
// exporters read it): its users' password hashes and its certificates.
// An empty path is valid: plain HTTP without authentication.
func checkWebConfig(file string) error { return toolkitweb.Validate(file) }

// serveHTTP serves srv on l until the server is shut down, through
// exporter-toolkit: plain HTTP when webConfigFile is empty, else with its
// TLS and basic authentication, the file re-read for every new connection
// (certificates) and request (users).
func serveHTTP(srv *http.Server, l net.Listener, webConfigFile string, logger *slog.Logger) error {
	systemd := false
	addrs := []string{l.Addr().String()}
	return toolkitweb.Serve(l, srv, &toolkitweb.FlagConfig{
		WebListenAddresses: &addrs,
		WebSystemdSocket:   &systemd,
		WebConfigFile:      &webConfigFile,
	}, logger)
}
