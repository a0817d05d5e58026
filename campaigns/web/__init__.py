"""The HTTP side: provider webhooks, patient-facing links, health."""
