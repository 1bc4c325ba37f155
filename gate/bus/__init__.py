"""What gates, the house and the box office share on MQTT: topics, payload codecs, client set-up."""
