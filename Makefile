# Entry points; CI runs scripts/test.sh (through .ci/run).
GO ?= go
# A count of executions, not a duration: Go 1.26's fuzzing coordinator can
# fail a duration-bounded run at its deadline with "context deadline
# exceeded" and no failing input (golang/go#75804, fixed in Go 1.27).
# 100000 executions take about 10 s per target here.
FUZZTIME ?= 100000x

.PHONY: test reliability fuzz build release image

# sdhub for this machine, in the checkout (./sdhub).
build:
	$(GO) build -o sdhub ./cmd/sdhub

# Release tarballs of the commit HEAD names, for linux/amd64 and
# linux/arm64, with sha256sums.txt, in dist/: the same commit gives the same
# bytes (scripts/release.sh).
release:
	scripts/release.sh -o dist

# The container image sdhub:latest, FROM scratch around the release binary
# for this machine's architecture; nothing is pulled (scripts/image.sh).
image:
	scripts/image.sh -t sdhub:latest

# Every test, as CI runs them.
test:
	scripts/test.sh

# The reliability and security scenarios at full size, against a freshly
# built sdhub, printed as one table; then each fuzz target for FUZZTIME.
reliability:
	$(GO) run ./internal/reliability/cmd/reliability
	$(MAKE) fuzz

# Each fuzz target for FUZZTIME executions, from its committed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzReadFile$$' -fuzztime $(FUZZTIME) ./discovery/file
	$(GO) test -run '^$$' -fuzz '^FuzzReadJSONAfter$$' -fuzztime $(FUZZTIME) ./discovery/file
	$(GO) test -run '^$$' -fuzz '^FuzzSanitizeLabelName$$' -fuzztime $(FUZZTIME) ./output
	$(GO) test -run '^$$' -fuzz '^FuzzRenderHostile$$' -fuzztime $(FUZZTIME) ./output
	$(GO) test -run '^$$' -fuzz '^FuzzCompareLabelsBodies$$' -fuzztime $(FUZZTIME) ./output
	$(GO) test -run '^$$' -fuzz '^FuzzFilter$$' -fuzztime $(FUZZTIME) ./output
