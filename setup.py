from setuptools import find_packages, setup

setup(
    name="gate",
    version="0.1.0",
    description="Ticket scanner firmware for Raspberry Pi gates, and the house-count service",
    packages=find_packages(include=["gate", "gate.*"]),
    package_data={"gate.house": ["static/*", "static/vendor/*"]},
    python_requires=">=3.11",
    install_requires=[
        "numpy>=1.24",          # on the Pi, apt's python3-numpy (see README)
        "zxing-cpp>=2.2",
        "gpiozero>=2.0.1",
        "paho-mqtt>=2.0,<3",
        "msgpack>=1.0",
        "cryptography>=38",
        "PyNaCl>=1.5",          # libsodium: what a gate verifies and opens (gate/boxoffice/ed25519.py); apt python3-nacl
        "Pillow>=9.4",
    ],
    extras_require={
        # playwright drives Debian's chromium; pyzbar and segno are the tests' second decoder and QR writer;
        # evdev-binary is python-evdev as a wheel for the USB scanner tests, published for x86-64 only: elsewhere
        # (the Pi itself) those tests skip unless python-evdev is there (apt's python3-evdev, or the hid extra).
        # ruff and mypy keep the code honest (ruff.toml, mypy.ini); both publish aarch64 wheels.
        "dev": ["pytest>=7", "hypothesis>=6", "protobuf>=4", "playwright>=1.40", "pyzbar>=0.1.9", "segno>=1.5",
                "evdev-binary>=1.6; platform_machine == 'x86_64'", "pyserial>=3.5", "ruff>=0.5", "mypy>=1.10"],
        "zbar": ["pyzbar>=0.1.9"],      # the optional second decode engine (needs apt's libzbar0)
        "demo": ["segno>=1.5"],         # renders the demo's simulated camera frames
        "v4l2": ["opencv-python-headless>=4.6"],
        "oled": ["luma.oled>=3.12"],
        "hid": ["evdev>=1.6"],          # USB barcode scanners in keyboard mode (Linux input events)
        "serial": ["pyserial>=3.5"],    # barcode scanners in serial / USB-CDC mode
        # picamera2 comes from apt (python3-picamera2) on the Pi: it cannot be pip-installed elsewhere.
    },
    entry_points={
        "console_scripts": ["gate=gate.cli:main"],
        # gpiozero picks this up from GPIOZERO_MOCK_PIN_CLASS: mock pins that log their changes (gate/door/mockpins.py)
        "gpiozero_mock_pin_classes": ["gaterecording = gate.door.mockpins:RecordingPin"],
    },
)
