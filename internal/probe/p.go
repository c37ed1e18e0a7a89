package probe

import (
	_ "github.com/alecthomas/kingpin/v2"
	_ "github.com/docker/docker/client"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/hashicorp/consul/api"
	_ "github.com/oklog/run"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/common/config"
	_ "github.com/prometheus/prometheus/discovery/consul"
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/moby"
	_ "github.com/prometheus/prometheus/discovery/targetgroup"
	_ "github.com/prometheus/prometheus/model/relabel"
	_ "github.com/prometheus/prometheus/util/strutil"
	_ "go.uber.org/goleak"
	_ "gopkg.in/yaml.v3"
)
