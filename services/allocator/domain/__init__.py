"""The allocator's rules, pure (no database, framework or broker): `queue` for who gets which units
of an arrival, `dates` for when each waiting line is promised its units and what to tell when that moves."""
