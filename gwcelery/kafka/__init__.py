"""Kafka transports: igwn-alert in, public alerts out, GCN notices in
(see doc/kafka.rst)."""
