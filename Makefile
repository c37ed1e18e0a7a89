# Entry points; CI runs scripts/test.sh (through .ci/run).
GO ?= go
FUZZTIME ?= 10s

.PHONY: test reliability fuzz

# Every test, as CI runs them.
test:
	scripts/test.sh

# The reliability and security scenarios at full size, against a freshly
# built sdhub, printed as one table; then each fuzz target for FUZZTIME.
reliability:
	$(GO) run ./reliability/cmd/reliability
	$(MAKE) fuzz

# Each fuzz target for a bounded time, from its committed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzReadFile$$' -fuzztime $(FUZZTIME) ./discovery/file
	$(GO) test -run '^$$' -fuzz '^FuzzSanitizeLabelName$$' -fuzztime $(FUZZTIME) ./output
	$(GO) test -run '^$$' -fuzz '^FuzzRenderHostile$$' -fuzztime $(FUZZTIME) ./output
