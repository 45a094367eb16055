"""Local runtime without Docker: Apache Kafka (KRaft) and a schema registry started from Maven Central jars."""
