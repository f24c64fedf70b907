"""Damaged and hostile files (issue 12): each is built here, fed to the CLI, and must end in one clean error."""
