package main

import (
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func mqttConnect(url, id string, clean bool) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(true).SetMaxReconnectInterval(time.Second).SetOrderMatters(false).
		SetWriteTimeout(30 * time.Second)
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", url, t.Error())
	}
	return c, nil
}

// mqttPub publishes n messages, keeping at most 1000 unacknowledged (QoS 1), and waits for
// every acknowledgement.
func mqttPub(url, id, topic string, n, first, size int, rate float64, qos byte) error {
	c, err := mqttConnect(url, id, true)
	if err != nil {
		return err
	}
	defer c.Disconnect(1000)
	pace := newPacer(rate)
	window := make(chan mqtt.Token, 1000)
	done := make(chan error, 1)
	go func() {
		for t := range window {
			if !t.WaitTimeout(120*time.Second) || t.Error() != nil {
				done <- fmt.Errorf("publish: %v", t.Error())
				for range window {
				}
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		pace.wait(i)
		window <- c.Publish(topic, qos, false, payload(first+i, size))
	}
	close(window)
	return <-done
}

func mqttSub(url, id, topic string, qos byte, r *receiver) error {
	c, err := mqttConnect(url, id, true)
	if err != nil {
		return err
	}
	t := c.Subscribe(topic, qos, func(_ mqtt.Client, m mqtt.Message) { r.got(m.Payload()) })
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("subscribe: %v", t.Error())
	}
	return nil
}
