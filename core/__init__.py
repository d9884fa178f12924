"""The shared core every other package builds on: errors, storage (local paths and lake
URLs, credentials, redaction, parallel transfer) and the model bundle format."""
