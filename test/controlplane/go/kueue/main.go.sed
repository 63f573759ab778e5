# KUEUE_METRICS_CERT_DIR, when set, replaces the fixed metrics certificate folder.
s|metricsCertPath := "/etc/kueue/metrics/certs"|metricsCertPath := "/etc/kueue/metrics/certs"; if d := os.Getenv("KUEUE_METRICS_CERT_DIR"); d != "" { metricsCertPath = d }|
