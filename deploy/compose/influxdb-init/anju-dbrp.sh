#!/bin/bash
# Run by the influxdb image once, after its first setup (DOCKER_INFLUXDB_INIT_* in compose.yaml), with the influx CLI
# signed in as the admin and DOCKER_INFLUXDB_INIT_BUCKET_ID set. The hub and Grafana query with InfluxQL, which
# InfluxDB 2 answers through a DBRP mapping of database/retention policy to the bucket (hub/config.py InfluxConfig);
# Grafana signs in with a v1 user/password that may only read the bucket (deploy/grafana's data source).
set -euo pipefail
influx v1 dbrp create \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${ANJU_INFLUXDB_DATABASE}" \
  --rp "${ANJU_INFLUXDB_RETENTION_POLICY}" \
  --default
influx v1 auth create \
  --username "${ANJU_INFLUXDB_READ_USER}" \
  --password "$(cat /run/secrets/grafana_influxdb_password)" \
  --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --description "Grafana: read the Anju bucket"
