"""Business modules built on the core's public API: they own their tables and never write the core's."""
