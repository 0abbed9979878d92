"""Documents made from doctypes: field validation, rendering to PDF/A, finalizing,
routing to channels and sending through the outbox."""
