"""Operations: JSON logs with masking, Prometheus metrics, privacy helpers."""
