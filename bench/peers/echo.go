// bench/peers/echo.go - a Go echo server: one goroutine per connection.
//
// The idiomatic Go server: blocking reads and writes in a goroutine each,
// the runtime's netpoller (epoll) underneath.  A plain read/write loop
// rather than io.Copy, so no splice(2) path changes what is measured.
// With -udp, a datagram echo too.  Standard library only: builds offline.
//
//	go build -o echo-go echo.go && ./echo-go -port 7200 -udp 7201
package main

import (
	"flag"
	"log"
	"net"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveUDP(port int) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 65536)
	for {
		n, addr, err := pc.ReadFromUDP(buf)
		if err == nil {
			pc.WriteToUDP(buf[:n], addr)
		}
	}
}

func main() {
	port := flag.Int("port", 7127, "TCP port on 127.0.0.1")
	udp := flag.Int("udp", 0, "UDP port on 127.0.0.1 (0: none)")
	flag.Parse()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: *port})
	if err != nil {
		log.Fatal(err)
	}
	if *udp != 0 {
		go serveUDP(*udp)
	}
	log.Printf("go: listening on tcp 127.0.0.1:%d", *port)
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}
