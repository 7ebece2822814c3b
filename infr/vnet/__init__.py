"""The vnet: a WireGuard mesh between the hosts, and admin peers.

The files come from the templates in infr/templates/mesh (pure functions in
infr.vnet.desired); infr.vnet.members puts them on hosts. Design:

* Hosts form a full mesh on `infrwg0`. A host's [Peer] entry carries its own vnet
  address and its containers' addresses as /32s (Apex's child prefixes), so
  containers reach the mesh without running WireGuard themselves.
* Routing: the bridge infrbr0 holds the whole vnetNetwork prefix, so a container
  believes every vnet address is on its own link and ARPs for it. Each host
  therefore routes every other member's /32 via infrwg0 and answers ARP on infrbr0
  for them (proxy_arp: the kernel answers for addresses routed out of another
  interface). Local containers stay reachable directly on the bridge; nothing
  inside the containers changes.
* Changes are applied with `wg syncconf`, which leaves live tunnels up. A oneshot
  systemd unit runs the same script at boot, so the mesh needs neither infr nor any
  other host to come back after a reboot. Hosts forward (net.ipv4.ip_forward).
* Zones: one nftables ruleset, the same on every host, in two families: inet sees
  traffic routed across the mesh, bridge sees traffic between containers of one host.
  A zone's containers reach each other, every host and the admins, and no other
  container; containers in no zone reach each other, hosts and admins as before, but
  not the zones' containers (else a zone would be open to any unzoned container).
"""
