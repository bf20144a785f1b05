"""The authority: domain model, codecs, services, storage and the command line."""
