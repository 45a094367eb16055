"""The Avro contracts (avro/*.avsc), their typed models and the Confluent wire-format serde."""
