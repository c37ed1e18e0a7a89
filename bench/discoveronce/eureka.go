package main

import (
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// eureka is a mock Eureka API: GET /eureka/apps lists a fixed set of
// instances, in the XML Eureka serves, and every request is counted.
type eureka struct {
	instances int
	body      []byte
	requests  atomic.Int64
	srv       *http.Server
	addr      string
}

func newEureka(instances, apps int) (*eureka, error) {
	type port struct {
		Port    int  `xml:",chardata"`
		Enabled bool `xml:"enabled,attr"`
	}
	type instance struct {
		InstanceID string `xml:"instanceId"`
		HostName   string `xml:"hostName"`
		App        string `xml:"app"`
		IPAddr     string `xml:"ipAddr"`
		Status     string `xml:"status"`
		Port       port   `xml:"port"`
		VipAddress string `xml:"vipAddress"`
	}
	type application struct {
		Name      string     `xml:"name"`
		Instances []instance `xml:"instance"`
	}
	var list struct {
		XMLName xml.Name      `xml:"applications"`
		Apps    []application `xml:"application"`
	}
	for a := range apps {
		list.Apps = append(list.Apps, application{Name: fmt.Sprintf("APP-%d", a)})
	}
	for i := range instances {
		a := &list.Apps[i%apps]
		a.Instances = append(a.Instances, instance{
			InstanceID: fmt.Sprintf("instance-%d", i),
			HostName:   fmt.Sprintf("host-%d.example", i),
			App:        a.Name,
			IPAddr:     fmt.Sprintf("10.1.%d.%d", i/250, i%250+1),
			Status:     "UP",
			Port:       port{Port: 8080, Enabled: true},
			VipAddress: a.Name,
		})
	}
	body, err := xml.Marshal(list)
	if err != nil {
		return nil, err
	}
	e := &eureka{instances: instances, body: body}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.addr = l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /eureka/apps", func(w http.ResponseWriter, _ *http.Request) {
		e.requests.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write(e.body)
	})
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	return e, nil
}

func (e *eureka) url() string { return "http://" + e.addr + "/eureka" }

// rate counts the requests answered over the next window, per minute.
func (e *eureka) rate(window time.Duration) float64 {
	start := e.requests.Load()
	t0 := time.Now()
	<-time.After(window)
	return float64(e.requests.Load()-start) / time.Since(t0).Minutes()
}

func (e *eureka) close() { _ = e.srv.Close() }
