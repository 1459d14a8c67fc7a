"""Talking to Salesforce with a token: the SOAP partner API (zeep), the REST API, and records
read from their replies."""
