"""Real servers on loopback that stand in for the services channels talk to."""
