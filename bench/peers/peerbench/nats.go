package main

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

func natsConnect(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(64<<20))
}

func natsPub(url, subject string, n, first, size int, rate float64, useJS bool) error {
	nc, err := natsConnect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	var js nats.JetStreamContext
	if useJS {
		if js, err = nc.JetStream(nats.PublishAsyncMaxPending(4096)); err != nil {
			return err
		}
	}
	pace := newPacer(rate)
	for i := 0; i < n; i++ {
		pace.wait(i)
		data := payload(first+i, size)
		if useJS {
			if _, err := js.PublishAsync(subject, data); err != nil {
				return err
			}
		} else if err := nc.Publish(subject, data); err != nil {
			return err
		}
	}
	if useJS {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(120 * time.Second):
			return fmt.Errorf("JetStream acks outstanding after 120 s")
		}
	}
	return nc.Flush()
}

func natsSub(url, subject string, useJS bool, stream string, r *receiver) error {
	nc, err := natsConnect(url)
	if err != nil {
		return err
	}
	handler := func(m *nats.Msg) { r.got(m.Data) }
	if useJS {
		js, err := nc.JetStream()
		if err != nil {
			return err
		}
		if _, err = js.Subscribe(subject, handler, nats.BindStream(stream), nats.OrderedConsumer()); err != nil {
			return err
		}
	} else if _, err = nc.Subscribe(subject, handler); err != nil {
		return err
	}
	return nc.Flush()
}

// natsJetStream connects to url and opens its JetStream context.
func natsJetStream(url string) (*nats.Conn, nats.JetStreamContext, error) {
	nc, err := natsConnect(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// setup creates EDGE (file storage, bench.>) in domain edge on A and HUB in domain hub on B,
// sourcing EDGE across the leaf node.
func natsSetup(urlA, urlB string) error {
	a, jsa, err := natsJetStream(urlA)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err = jsa.AddStream(&nats.StreamConfig{Name: "EDGE", Subjects: []string{"bench.>"},
		Storage: nats.FileStorage}); err != nil {
		return fmt.Errorf("EDGE: %w", err)
	}
	b, jsb, err := natsJetStream(urlB)
	if err != nil {
		return err
	}
	defer b.Close()
	_, err = jsb.AddStream(&nats.StreamConfig{Name: "HUB", Storage: nats.FileStorage,
		Sources: []*nats.StreamSource{{Name: "EDGE",
			External: &nats.ExternalStream{APIPrefix: "$JS.edge.API"}}}})
	if err != nil {
		return fmt.Errorf("HUB: %w", err)
	}
	return nil
}
