"""DICOM network gateway and PACS connectors: every scan is checked before it reaches the PACS.

The gateway (``medforensics gateway run``) is a Storage SCP with a durable on-disk spool:

    modality --C-STORE--> scp (thin handlers) --> spool (fsynced files + SQLite index)
                                                    | series quiet for N seconds
                                                    v
                                      worker pool: scan + reports (worker)
                                                    | verdict -> actions (policy)
                                                    v
                         dispatch: forward (C-STORE SCU) / quarantine / alert

The DICOMweb connector (``medforensics pacs scan``) pulls studies by QIDO/WADO-RS and stores the
results back by STOW-RS. Everything that needs ``pynetdicom`` or ``dicomweb-client`` imports it
lazily, so importing this package costs nothing.
"""

from __future__ import annotations

from medforensics.gateway.config import ConfigError, Destination, GatewayConfig, load_config

__all__ = ["ConfigError", "Destination", "GatewayConfig", "load_config"]
