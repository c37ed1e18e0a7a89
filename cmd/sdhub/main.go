// Command sdhub runs service discovery for the jobs of a prometheus.yml and
// writes one file_sd file per job for Prometheus to read.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/web"
)

// Exit codes, as Prometheus uses them.
const (
	exitOK         = 0
	exitError      = 1
	exitBadConfig  = 2
	defaultListen  = ":9099"
	defaultOutDir  = "sd"
	defaultCfgFile = "prometheus.yml"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// flags are the server's command-line settings.
type flags struct {
	configFile      string
	outputDir       string
	listenAddress   string
	enableLifecycle bool
	webConfigFile   string
	autoReload      bool
	flushInterval   time.Duration
	log             promslog.Config
}

func runMain(args []string, stdout, stderr io.Writer) int {
	var f flags
	f.log = promslog.Config{Writer: stderr}
	app := kingpin.New("sdhub", "Service discovery for Prometheus: runs the service discovery of a prometheus.yml's jobs and writes one file_sd file per job.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	helped := false // --help prints the usage and ends here, as kingpin's exit would
	app.Terminate(func(int) { helped = true })
	app.HelpFlag.Short('h')
	app.Version(version.Print("sdhub"))

	app.Flag("config.file", "sdhub configuration file: a prometheus.yml.").Default(defaultCfgFile).StringVar(&f.configFile)
	app.Flag("config.auto-reload", "Reload the configuration when the config file changes.").BoolVar(&f.autoReload)
	app.Flag("output.dir", "Directory of the file_sd outputs, one <job_name>.json per job.").Default(defaultOutDir).StringVar(&f.outputDir)
	app.Flag("output.flush-interval", "How long the hub gathers a burst of discovery updates before writing the outputs.").
		Default(manager.DefaultFlushInterval.String()).DurationVar(&f.flushInterval)
	app.Flag("web.listen-address", "Address to listen on for the web interface, metrics and lifecycle endpoints.").Default(defaultListen).StringVar(&f.listenAddress)
	app.Flag("web.enable-lifecycle", "Enable the reload endpoint /-/reload.").BoolVar(&f.enableLifecycle)
	app.Flag("web.config.file", "Path to a configuration file that can enable TLS or basic authentication on the web endpoints (exporter-toolkit's format).").
		Default("").StringVar(&f.webConfigFile)
	promslogflag.AddFlags(app, &f.log)

	runCmd := app.Command("run", "Run the hub (the default command).").Default()
	checkCmd := app.Command("check", "Check the resources for validity.")
	checkConfigCmd := checkCmd.Command("config", "Check if the config files are valid or not.")
	checkFiles := checkConfigCmd.Arg("config-files", "The config files to check.").Required().Strings()
	discoverCmd := newDiscoverCommand(app)
	generateCmd := newGenerateCommand(app)

	cmd, err := app.Parse(args)
	if helped {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sdhub: %v\n", err)
		return exitBadConfig
	}
	switch cmd {
	case checkConfigCmd.FullCommand():
		return checkConfig(*checkFiles, stdout, stderr)
	case discoverCmd.cmd.FullCommand():
		return discoverCmd.run(f, stdout, stderr)
	case generateCmd.cmd.FullCommand():
		return generateCmd.run(f, stdout, stderr)
	case runCmd.FullCommand():
		return serve(f, promslog.New(&f.log))
	}
	return exitOK // --help
}

// errSignal ends the run group on SIGTERM or SIGINT: a clean exit.
var errSignal = errors.New("received a termination signal")

func serve(f flags, logger *slog.Logger) int {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("sdhub"))

	cfg, err := config.LoadFile(f.configFile)
	if err != nil {
		logger.Error("Error loading config", "file", f.configFile, "err", err)
		return exitBadConfig
	}
	for _, w := range cfg.Warnings {
		logger.Warn("Configuration warning", "file", f.configFile, "warning", w)
	}
	if err := cfg.CheckOutputDir(f.outputDir); err != nil {
		logger.Error("Error loading config", "file", f.configFile, "err", err)
		return exitBadConfig
	}
	if err := checkWebConfig(f.webConfigFile); err != nil {
		logger.Error("Error loading web config", "file", f.webConfigFile, "err", err)
		return exitBadConfig
	}

	refresh, err := discovery.NewRefreshMetrics(reg)
	if err != nil {
		logger.Error("Cannot register metrics", "err", err)
		return exitError
	}
	mechMetrics := map[string]discovery.Metrics{}
	for _, m := range config.Mechanisms {
		if m.NewMetrics == nil {
			continue
		}
		mm, err := m.NewMetrics(reg, refresh)
		if err != nil {
			logger.Error("Cannot register metrics", "mechanism", m.Name, "err", err)
			return exitError
		}
		mechMetrics[m.Name] = mm
	}
	discoveryErrors := web.NewDiscoveryErrors() // the last errors of the discoverers, for the status page
	mgr, err := manager.New(manager.Options{
		Logger:         slog.New(discoveryErrors.Handler(logger.Handler())).With("component", "discovery manager"),
		Registerer:     reg,
		FlushInterval:  f.flushInterval,
		Metrics:        mechMetrics,
		RefreshMetrics: refresh,
	})
	if err != nil {
		logger.Error("Cannot start the discovery manager", "err", err)
		return exitError
	}
	writer, err := output.New(f.outputDir, output.Options{Logger: logger.With("component", "writer"), Registerer: reg})
	if err != nil {
		logger.Error("Cannot use the output directory", "dir", f.outputDir, "err", err)
		return exitError
	}
	rl, err := newReloader(f.configFile, cfg, mgr, reg, logger)
	if err != nil {
		logger.Error("Cannot register metrics", "err", err)
		return exitError
	}
	rl.outputDir = f.outputDir
	rl.applied = func(start time.Time) {
		var names []string
		for _, p := range mgr.Providers() {
			names = append(names, p.Name)
		}
		discoveryErrors.Applied(start, names)
	}
	if err := mgr.ApplyConfig(cfg.Jobs()); err != nil {
		logger.Error("Cannot apply the config", "err", err)
		return exitBadConfig
	}

	listener, err := net.Listen("tcp", f.listenAddress)
	if err != nil {
		logger.Error("Cannot listen", "address", f.listenAddress, "err", err)
		return exitError
	}
	targets := web.NewTargets() // the targets of the http_sd endpoint and the status page
	srv := &http.Server{
		Handler: web.NewHandler(web.Options{
			Logger:          logger.With("component", "web"),
			Gatherer:        reg,
			Ready:           writer.Ready,
			Reload:          rl.reload,
			EnableLifecycle: f.enableLifecycle,
			Targets:         targets,
			Jobs:            writer.Jobs,
			Providers:       mgr.Providers,
			DiscoveryErrors: discoveryErrors,
			Config:          rl.config,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}

	var g run.Group
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return handleSignals(ctx, rl, logger) }, func(error) { cancel() })
	}
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return mgr.Run(ctx) }, func(error) { cancel() })
	}
	{
		// The manager's updates go through targets to the writer.
		toWriter := make(chan manager.Update)
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return targets.Run(ctx, mgr.SyncCh(), toWriter) }, func(error) { cancel() })
		g.Add(func() error { return writer.Run(ctx, toWriter) }, func(error) { cancel() })
	}
	if f.autoReload {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return rl.watch(ctx) }, func(error) { cancel() })
	}
	{
		g.Add(func() error {
			logger.Info("Listening", "address", listener.Addr().String())
			if err := serveHTTP(srv, listener, f.webConfigFile, logger.With("component", "web")); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("web server: %w", err)
			}
			return nil
		}, func(error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	logger.Info("Starting sdhub", "version", version.Info(), "config", f.configFile, "output_dir", absOr(f.outputDir), "jobs", len(cfg.ScrapeConfigs))
	err = g.Run()
	if errors.Is(err, errSignal) || err == nil {
		logger.Info("See you next time!")
		return exitOK
	}
	logger.Error("Fatal error", "err", err)
	return exitError
}

// handleSignals reloads on SIGHUP and ends the group on SIGTERM or SIGINT.
func handleSignals(ctx context.Context, rl *reloader, logger *slog.Logger) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-ch:
			if s == syscall.SIGHUP {
				_ = rl.reload() // logged by reload
				continue
			}
			logger.Info("Received a termination signal, exiting gracefully", "signal", s.String())
			return errSignal
		}
	}
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
