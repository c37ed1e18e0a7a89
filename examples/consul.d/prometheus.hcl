# The Consul of examples/docker-compose.yml registers the compose's
# Prometheus as a service tagged "metrics": the target that the
# consul-services job of examples/consul.yml keeps (Consul's own service has
# no such tag, and its relabelling drops it).
service {
  name    = "prometheus"
  address = "prometheus"
  port    = 9090
  tags    = ["metrics"]
}
