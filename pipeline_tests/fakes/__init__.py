"""Test doubles that speak real protocols (a loopback FMP server) so client behaviour is tested end to end."""
