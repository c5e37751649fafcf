"""Use cases: one function per thing a user does, each one unit of work and one commit."""
