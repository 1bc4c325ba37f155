# Thin wrappers around ./run, for those who reach for make.
.PHONY: demo test bench setup test-arm64 test-system test-system-arm64 install-dry-run
demo:
	./run demo
test:
	./run test
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
