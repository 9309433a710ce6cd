"""Plain, row-at-a-time reference implementations the fast engines are checked against."""
