"""The foundation every layer shares: configuration, calendar, Redis schema, domain rules."""
