# Two commands on a fresh machine: `make demo` (embedded default, no downloads) and `make test`.
# Both create .venv on first use. TORCH_SPEC picks the torch build: the default is the CPU
# 2.13.0 wheel; on a GPU machine e.g. TORCH_SPEC="torch==2.13.0" SPCONV=spconv-cu126.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
SPCONV ?= spconv
PY := $(VENV)/bin/python
OUT ?= demo_out
# Shared libraries Open3D's wheel (the renderer; CPU ray casting, no display used) loads at import:
# libusb and libudev on x86_64, libgfortran on aarch64, GL/EGL/X11 on both. Installed with apt-get
# (sudo when not root) only when dpkg says one is missing; SYSTEM_PACKAGES= skips this.
SYSTEM_PACKAGES ?= libgl1 libegl1 libx11-6 libusb-1.0-0 libudev1 libgfortran5

.PHONY: demo test test-ros bench clean-venv

$(VENV)/.installed: setup.py setup.cfg
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		echo "apt-get install" $$missing; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q "$(SPCONV)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/sahmr demo --out $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The real ROS 2 graph (rclpy from the ros-jazzy wheels, in its own venv .ros-venv) and colcon build.
test-ros:
	test/ros_graph/ci.sh

bench: $(VENV)/.installed
	$(PY) bench/latency.py

clean-venv:
	rm -rf $(VENV)
