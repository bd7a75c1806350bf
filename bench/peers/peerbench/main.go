// peerbench: the peers' side of bench/compare, native clients for core NATS, JetStream and MQTT
// (Mosquitto), built offline from Debian's Go packages (golang-github-nats-io-go-nats-dev,
// golang-github-eclipse-paho.mqtt.golang-dev) with GO111MODULE=off.
//
//	peerbench -proto nats|mqtt -mode pub -url U -subject S -n N [-first F] [-size B] [-rate R] [-js]
//	peerbench -proto nats|mqtt -mode sub -url U -subject S [-n N -grace G] [-js -stream HUB]
//	peerbench -proto nats -mode setup -url A -url2 B   (JetStream: EDGE on A, HUB on B sourcing EDGE)
//
// Payloads start with "<seq> <send unix ns> "; the subscriber prints "<seq> <send ns> <recv ns>"
// per message, prints "ready" on stderr once subscribed, and exits on SIGTERM (or once it has
// n distinct messages and nothing arrived for -grace seconds).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	proto := flag.String("proto", "nats", "nats or mqtt")
	mode := flag.String("mode", "pub", "pub, sub or setup")
	url := flag.String("url", "", "server (nats://host:port or tcp://host:port)")
	url2 := flag.String("url2", "", "second server (setup)")
	subject := flag.String("subject", "bench.r", "subject or topic")
	n := flag.Int("n", 1000, "messages")
	first := flag.Int("first", 1, "first sequence number")
	size := flag.Int("size", 256, "payload bytes")
	rate := flag.Float64("rate", 0, "messages per second (0: as fast as possible)")
	js := flag.Bool("js", false, "JetStream")
	stream := flag.String("stream", "HUB", "stream the subscriber reads (JetStream)")
	grace := flag.Float64("grace", 1, "seconds without messages before the subscriber exits, once it has n")
	qos := flag.Int("qos", 1, "MQTT QoS")
	id := flag.String("id", "", "MQTT client id (default: from the pid)")
	flag.Parse()
	if *id == "" {
		*id = fmt.Sprintf("peerbench-%d", os.Getpid())
	}
	var err error
	switch {
	case *mode == "pub" && *proto == "nats":
		err = natsPub(*url, *subject, *n, *first, *size, *rate, *js)
	case *mode == "pub" && *proto == "mqtt":
		err = mqttPub(*url, *id, *subject, *n, *first, *size, *rate, byte(*qos))
	case *mode == "sub":
		r := newReceiver()
		if *proto == "nats" {
			err = natsSub(*url, *subject, *js, *stream, r)
		} else {
			err = mqttSub(*url, *id, *subject, byte(*qos), r)
		}
		if err == nil {
			fmt.Fprintln(os.Stderr, "ready")
			err = r.run(*n, *grace)
		}
	case *mode == "setup" && *proto == "nats":
		err = natsSetup(*url, *url2)
	default:
		err = fmt.Errorf("unknown mode %q for %q", *mode, *proto)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func payload(seq, size int) []byte {
	b := []byte(strconv.Itoa(seq) + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + " ")
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// pacer spaces messages at rate per second (no spacing when rate is 0).
type pacer struct {
	start time.Time
	rate  float64
}

func newPacer(rate float64) pacer { return pacer{time.Now(), rate} }

func (p pacer) wait(i int) {
	if p.rate <= 0 {
		return
	}
	due := p.start.Add(time.Duration(float64(i) / p.rate * 1e9))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

// receiver prints one line per message and counts distinct sequence numbers.
type receiver struct {
	mu   sync.Mutex
	out  *bufio.Writer
	seen map[int]bool
	last time.Time
}

func newReceiver() *receiver {
	return &receiver{out: bufio.NewWriterSize(os.Stdout, 1<<16), seen: map[int]bool{}, last: time.Now()}
}

func (r *receiver) got(data []byte) {
	recv := time.Now().UnixNano()
	f := bytes.SplitN(data, []byte(" "), 3)
	if len(f) < 3 {
		return
	}
	seq, _ := strconv.Atoi(string(f[0]))
	r.mu.Lock()
	r.seen[seq] = true
	r.last = time.Now()
	fmt.Fprintf(r.out, "%s %s %d\n", f[0], f[1], recv)
	r.mu.Unlock()
}

// run flushes what arrived every 20 ms until SIGTERM, or until n distinct messages arrived
// and then nothing for grace seconds.
func (r *receiver) run(n int, grace float64) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.out.Flush()
		case <-tick.C:
			r.mu.Lock()
			err := r.out.Flush()
			done := n > 0 && len(r.seen) >= n && time.Since(r.last).Seconds() >= grace
			r.mu.Unlock()
			if err != nil || done {
				return err
			}
		}
	}
}
