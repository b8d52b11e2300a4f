"""Training and calibration: datasets built from authentic scans plus the attack simulator."""
