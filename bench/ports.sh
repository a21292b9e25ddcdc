# Sourced by the bench scripts whose servers listen on ports of their own choosing.
# port_base prints a random first port below the kernel's ephemeral range (connect()'s local
# ports, 32768 up by default), where no client socket of an earlier run (10,000 of them in
# the idle benches) can still hold it and make a server's listen fail.
port_base() {
  local low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 20100 ] || low=32768
  echo $((20000 + RANDOM % (low - 20100)))
}
