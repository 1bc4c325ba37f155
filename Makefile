# Thin wrappers around ./run, for those who reach for make.
.PHONY: demo test test-slow bench setup test-arm64 test-system test-system-arm64 install-dry-run test-isolation
demo:
	./run demo
test:
	./run test
test-slow:   # real pretix, floods, crowds, bridge cuts, house takeovers: own target, must pass too
	./run test-slow
bench:
	./run bench
setup:
	./run setup
test-arm64:
	./scripts/test-arm64
test-system:
	./run test-system
test-system-arm64:
	./run test-system-arm64
install-dry-run:
	./scripts/install-pi --dry-run
test-isolation:   # the scan loop under a bus flood, run whatever the machine's load
	GATE_TIMING_ANY_LOAD=1 ./run test-slow -k test_isolation
