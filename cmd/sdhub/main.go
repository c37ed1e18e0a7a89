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
	"runtime/debug"
	"strconv"
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
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/priority"
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
	externalURL     string
	routePrefix     string
	autoReload      bool
	flushInterval   time.Duration
	tuning          discovery.Tuning
	layout          layoutFlags
	filter          filterFlags
	log             promslog.Config
}

func runMain(args []string, stdout, stderr io.Writer) int {
	var f flags
	f.log = promslog.Config{Writer: stderr, Level: promslog.NewLevel(), Format: promslog.NewFormat()}
	app := kingpin.New("sdhub", "Service discovery for Prometheus: runs the service discovery of a prometheus.yml's jobs and writes one file_sd file per job. "+
		"`sdhub run --help` lists the hub's flags.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	helped := false // --help prints the usage and ends here, as kingpin's exit would
	app.Terminate(func(int) { helped = true })
	app.HelpFlag.Short('h')
	app.Version(version.Print("sdhub"))

	// Each command has its own flags, so that its help lists only those;
	// run is the default, so `sdhub --config.file=x` runs the hub.
	runCmd := app.Command("run", "Run the hub (the default command: `sdhub --config.file=F` is `sdhub run --config.file=F`).").Default()
	runCmd.Flag("config.file", "sdhub configuration file: a prometheus.yml.").Default(defaultCfgFile).StringVar(&f.configFile)
	runCmd.Flag("config.auto-reload", "Reload the configuration when the config file changes.").BoolVar(&f.autoReload)
	runCmd.Flag("output.dir", "Directory of the file_sd outputs, one <job_name>.json per job.").Default(defaultOutDir).StringVar(&f.outputDir)
	runCmd.Flag("output.flush-interval", "How long the hub gathers a burst of discovery updates before writing the outputs.").
		Default(manager.DefaultFlushInterval.String()).DurationVar(&f.flushInterval)
	addLayoutFlags(runCmd, &f.layout)
	addFilterFlags(runCmd, &f.filter)
	runCmd.Flag("consul.service-list-interval", "While every service of a consul_sd_configs entry has a blocking query of its own, the least time between two answers of Consul's service list: "+
		"how late a new service can be seen, against the agent's CPU (Consul builds the whole list for each answer). 0: each entry's refresh_interval.").
		Default("0s").DurationVar(&f.tuning.ConsulServiceListInterval)
	runCmd.Flag("web.listen-address", "Address to listen on for the web interface, metrics and lifecycle endpoints.").Default(defaultListen).StringVar(&f.listenAddress)
	runCmd.Flag("web.enable-lifecycle", "Enable the reload endpoint /-/reload.").BoolVar(&f.enableLifecycle)
	runCmd.Flag("web.config.file", "Path to a configuration file that can enable TLS or basic authentication on the web endpoints (exporter-toolkit's format).").
		Default("").StringVar(&f.webConfigFile)
	runCmd.Flag("web.external-url", "The URL under which sdhub is externally reachable (for example, if sdhub is served via a reverse proxy). "+
		"Used for the http_sd URLs the pages give. If the URL has a path portion, it will be used to prefix all HTTP endpoints served by sdhub. "+
		"If omitted, relevant URL components will be derived automatically.").PlaceHolder("<URL>").StringVar(&f.externalURL)
	runCmd.Flag("web.route-prefix", "Prefix for the internal routes of web endpoints. Defaults to path of --web.external-url.").
		PlaceHolder("<path>").StringVar(&f.routePrefix)
	addLogFlags(runCmd, &f.log)

	checkCmd := app.Command("check", "Check the resources for validity.")
	checkConfigCmd := checkCmd.Command("config", "Check if the config files are valid or not.")
	checkFiles := checkConfigCmd.Arg("config-files", "The config files to check.").Required().Strings()
	addLayoutFlags(checkConfigCmd, &f.layout)
	addFilterFlags(checkConfigCmd, &f.filter)
	checkConsumerCmd := checkCmd.Command("consumer-config", "Check that every job of a consuming Prometheus's config that reads sdhub's http_sd endpoint "+
		"with ?rules=DIGEST has the relabel rules and scrape settings DIGEST names, as `sdhub generate prometheus-config` wrote them.")
	consumerFiles := checkConsumerCmd.Arg("config-files", "The consuming Prometheus's config files to check.").Required().Strings()
	discoverCmd := newDiscoverCommand(app, &f.log)
	generateCmd := newGenerateCommand(app)
	generateCmd.cmd.Flag("config.file", "sdhub configuration file: a prometheus.yml.").Default(defaultCfgFile).StringVar(&f.configFile)
	generateCmd.cmd.Flag("output.dir", "sdhub's --output.dir, as the consuming Prometheus reaches it.").Default(defaultOutDir).StringVar(&f.outputDir)
	addLayoutFlags(generateCmd.cmd, &f.layout)
	addFilterFlags(generateCmd.cmd, &f.filter)
	if inspectApp != nil {
		inspectApp(app)
	}

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
		return checkConfig(*checkFiles, f.layout, f.filter, stdout, stderr)
	case checkConsumerCmd.FullCommand():
		return checkConsumer(*consumerFiles, stdout, stderr)
	case discoverCmd.cmd.FullCommand():
		return discoverCmd.run(stdout, stderr)
	case generateCmd.cmd.FullCommand():
		return generateCmd.run(f, stdout, stderr)
	case runCmd.FullCommand():
		return serve(f, promslog.New(&f.log))
	}
	return exitOK // --help
}

// inspectApp, when set, is handed the application with every command and
// flag defined: the test that holds docs/reference/flags.md to the flags
// reads them there.
var inspectApp func(*kingpin.Application)

// wrapRegisterer wraps the server's registry for every registration: the
// test that holds docs/reference/metrics.md to the metrics records them
// there.
var wrapRegisterer = func(r prometheus.Registerer) prometheus.Registerer { return r }

// addLogFlags adds Prometheus's --log.level and --log.format to a command
// (promslog/flag adds them to a whole application only).
func addLogFlags(cmd *kingpin.CmdClause, c *promslog.Config) {
	cmd.Flag(promslogflag.LevelFlagName, promslogflag.LevelFlagHelp).Default("info").HintOptions(promslog.LevelFlagOptions...).SetValue(c.Level)
	cmd.Flag(promslogflag.FormatFlagName, promslogflag.FormatFlagHelp).Default("logfmt").HintOptions(promslog.FormatFlagOptions...).SetValue(c.Format)
}

// errSignal ends the run group on SIGTERM or SIGINT: a clean exit.
var errSignal = errors.New("received a termination signal")

// The consuming Prometheus's view of a job, for the pages and discover:
// its relabel_configs and the scrape settings it sets as labels before
// them, as Prometheus's config package loaded them. Variables, so that a
// test can give a job rules its config does not hold.
var (
	jobRelabel = func(cfg *config.Config, job string) []*relabel.Config {
		if sc := scrapeConfig(cfg, job); sc != nil {
			return sc.RelabelConfigs()
		}
		return nil
	}
	jobScrape = func(cfg *config.Config, job string) web.ScrapeSettings {
		sc := scrapeConfig(cfg, job)
		if sc == nil || sc.Prometheus == nil {
			return web.ScrapeSettings{}
		}
		p := sc.Prometheus
		return web.ScrapeSettings{
			Scheme: p.Scheme, MetricsPath: p.MetricsPath, Interval: p.ScrapeInterval, Timeout: p.ScrapeTimeout, Params: p.Params,
			ScrapeNativeHistograms:         p.ScrapeNativeHistogramsEnabled(),
			ConvertClassicHistogramsToNHCB: p.ConvertClassicHistogramsToNHCBEnabled(),
			AlwaysScrapeClassicHistograms:  p.AlwaysScrapeClassicHistogramsEnabled(),
		}
	}
)

// scrapeConfig is job's scrape config in cfg, nil when sdhub does not
// serve it.
func scrapeConfig(cfg *config.Config, job string) *config.ScrapeConfig {
	if cfg == nil {
		return nil
	}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == job {
			return sc
		}
	}
	return nil
}

// defaultGOGC is the server's garbage collection target when GOGC is not
// set: sdhub holds every job's targets for as long as it runs, and a change
// of every target of a large job keeps two versions of it alive at once;
// collecting at 50% growth instead of Go's 100% keeps the peak near the live
// heap for a few percent more CPU (bench/pipeline measures both). Prometheus
// likewise sets its own default (75).
const defaultGOGC = 50

// setGOGC applies defaultGOGC unless the environment sets GOGC, and returns
// the percentage in effect.
func setGOGC() string {
	if v, ok := os.LookupEnv("GOGC"); ok {
		return v
	}
	debug.SetGCPercent(defaultGOGC)
	return strconv.Itoa(defaultGOGC)
}

func serve(f flags, logger *slog.Logger) int {
	started := time.Now()
	gogc := setGOGC()
	registry := prometheus.NewRegistry()
	reg := wrapRegisterer(registry)
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
	// One gate for the hub: writing an output goes before the decoding
	// that can wait (package priority).
	gate := &priority.Gate{}
	mgr, err := manager.New(manager.Options{
		Logger:         logger.With("component", "discovery manager"),
		Registerer:     reg,
		FlushInterval:  f.flushInterval,
		Metrics:        mechMetrics,
		RefreshMetrics: refresh,
		Priority:       gate,
		Tuning:         f.tuning,
	})
	if err != nil {
		logger.Error("Cannot start the discovery manager", "err", err)
		return exitError
	}
	layout, err := f.layout.layout()
	if err != nil {
		logger.Error("Invalid output layout", "err", err)
		return exitBadConfig
	}
	outputs, err := output.New(f.outputDir, output.Options{Logger: logger.With("component", "output"), Registerer: reg, Discovery: mgr.Jobs,
		WholeFileInterval: f.layout.wholeInterval, Priority: gate})
	if err != nil {
		logger.Error("Cannot use the output directory", "dir", f.outputDir, "err", err)
		return exitError
	}
	if err := outputs.SetLayout(layout.Plan(cfg.Splittable())); err != nil {
		logger.Error("Cannot write the outputs", "err", err)
		return exitError
	}
	rl, err := newReloader(f.configFile, cfg, mgr, reg, logger)
	if err != nil {
		logger.Error("Cannot register metrics", "err", err)
		return exitError
	}
	rl.outputDir = f.outputDir
	rl.outputs, rl.layout, rl.filter = outputs, layout, f.filter
	if err := rl.setFilters(cfg); err != nil {
		logger.Error("Cannot write the outputs", "err", err)
		return exitError
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
	extURL, err := externalURL(f.externalURL, listener.Addr().String(), f.webConfigFile)
	if err != nil {
		_ = listener.Close()
		logger.Error("Invalid --web.external-url", "url", f.externalURL, "err", err)
		return exitBadConfig
	}
	prefix := f.routePrefix
	if prefix == "" {
		prefix = extURL.Path
	}
	prefix = web.RoutePrefix(prefix)
	if prefix != "/" {
		logger.Info("Router prefix", "prefix", prefix)
	}
	webOpts := web.Options{
		Logger:          logger.With("component", "web"),
		Gatherer:        registry,
		Reload:          rl.reload,
		EnableLifecycle: f.enableLifecycle,
		ExternalURL:     extURL,
		RoutePrefix:     prefix,
		Outputs:         outputs,
		Jobs:            mgr.Jobs,
		Providers:       mgr.Providers,
		Config:          rl.config,
		LastReload:      rl.status,
		Version: &web.Version{Version: version.Version, Revision: version.GetRevision(), Branch: version.Branch,
			BuildUser: version.BuildUser, BuildDate: version.BuildDate, GoVersion: version.GoVersion},
		Started:    started,
		Registerer: reg,
		HubFilter:  rl.filterPlan,
	}
	if jobRelabel != nil {
		webOpts.Relabel = func(job string) []*relabel.Config { return jobRelabel(rl.config(), job) }
	}
	if jobScrape != nil {
		webOpts.Scrape = func(job string) web.ScrapeSettings { return jobScrape(rl.config(), job) }
	}
	srv := &http.Server{
		Handler:           web.NewHandler(webOpts),
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
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return outputs.Run(ctx, mgr.SyncCh()) }, func(error) { cancel() })
	}
	if f.autoReload {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return rl.watch(ctx) }, func(error) { cancel() })
	}
	{
		g.Add(func() error {
			// exporter-toolkit logs "Listening on" with the address.
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
	logger.Info("Starting sdhub", "version", version.Info(), "config", f.configFile, "output_dir", absOr(f.outputDir), "jobs", len(cfg.ScrapeConfigs), "gogc", gogc)
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
