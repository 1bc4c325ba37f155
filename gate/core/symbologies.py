"""The barcode symbologies a gate can be told to read, by the names the config uses."""

# name -> (zxing-cpp format name, zbar symbol name)
SYMBOLOGIES = {
    "qr": ("QRCode", "QRCODE"),
    "microqr": ("MicroQRCode", None),
    "code128": ("Code128", "CODE128"),
    "code39": ("Code39", "CODE39"),
    "ean13": ("EAN13", "EAN13"),
    "itf": ("ITF", "I25"),
    "datamatrix": ("DataMatrix", None),
    "aztec": ("Aztec", None),
    "pdf417": ("PDF417", "PDF417"),
}
