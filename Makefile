# vmdriver — `make demo` and `make test` set up everything they need on a
# Debian machine (installing missing packages with apt-get as root), build
# the test guests and run.

GO        ?= go
BUILD     := $(CURDIR)/build
BIN       := $(BUILD)/vmdriver
IMAGES    := $(BUILD)/images
GOTESTFLAGS ?=

# Tests find the guests here; under make a missing tool or guest fails a
# test instead of skipping it.
export VMDRIVER_IMAGES := $(IMAGES)

.PHONY: all deps build images image-minimal image-systemd image-desktop demo test test-unit vet bench clean

all: build

deps:
	./hack/install-deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/vmdriver

# Guests are cached by content under the user cache dir; rebuilding an
# unchanged guest takes well under a second.
images: image-minimal image-systemd

image-minimal: deps build
	$(BIN) image build -v --kind minimal --out $(IMAGES)/minimal minimal

image-systemd: deps build
	$(BIN) image build -v --kind systemd --out $(IMAGES)/systemd systemd

# The X11 guest of the GUI tests (about a minute to build once, 0.7 GiB
# in the cache); `make images` and the demo leave it out.
image-desktop: deps build
	$(BIN) image build -v --kind desktop --out $(IMAGES)/desktop desktop

# Runs an example NixOS-style test script against the minimal guest (the
# only one it needs, so a first demo does not wait for debootstrap). The
# first run boots cold and saves a warm entry; later runs start warm.
demo: image-minimal
	$(BIN) eval-file examples/scripts/minimal.py --warm --start-scripts $(IMAGES)/minimal/run-minimal-vm

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: images image-desktop vet
	VMDRIVER_REQUIRE_VM=1 $(GO) test -count=1 -race -timeout 25m $(GOTESTFLAGS) ./...

# Unit tests only: no guests, no QEMU required.
test-unit:
	$(GO) test -count=1 -race -short ./...

bench: images
	VMDRIVER_REQUIRE_VM=1 $(GO) run ./cmd/vmdriver-bench -vmdriver $(BIN) -out docs/benchmarks.md

clean:
	rm -rf $(BUILD)
