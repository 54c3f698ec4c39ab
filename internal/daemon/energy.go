package daemon

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/aegis-flow/aegis/internal/balance"
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/proxy"
	"github.com/aegis-flow/aegis/internal/telemetry"
)

// energyState is the process's energy meter. It lives as long as the
// daemon: its counters must keep counting across reloads, so [energy]
// changes apply at the next start.
type energyState struct {
	meter  *telemetry.Meter
	cfg    config.Energy
	mu     sync.Mutex
	cancel context.CancelFunc
}

// initEnergy builds the meter from cfg's [energy] section.
func (d *Daemon) initEnergy(cfg *config.File) error {
	e := cfg.Energy
	m, err := telemetry.NewMeter(telemetry.MeterOptions{
		Region: e.Region, Intensity: d.CarbonIntensity(), Interval: e.Interval.Duration,
		DisableRAPL: e.RAPL == "off", MinWattsPerVCPU: e.MinWattsPerVCPU, MaxWattsPerVCPU: e.MaxWattsPerVCPU,
		JoulesPerByte: e.JoulesPerByte, EmbodiedGramsPerHour: e.EmbodiedGramsPerHour,
		SCIWindow: e.SCIWindow.Duration, Registerer: d.registry, Logger: d.log,
	})
	if err != nil {
		return fmt.Errorf("energy meter: %w", err)
	}
	d.energy = &energyState{meter: m, cfg: e}
	d.log.Info("energy meter ready", "source", m.Source(), "region", e.Region)
	return nil
}

// startEnergy runs the meter until stopEnergy or ctx ends.
func (d *Daemon) startEnergy(ctx context.Context) {
	es := d.energy
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.cancel != nil {
		return
	}
	mctx, cancel := context.WithCancel(ctx)
	es.cancel = cancel
	d.wg.Go(func() { d.guard("energy", func() { es.meter.Run(mctx) }) })
}

// stopEnergy stops the meter after a last measurement.
func (d *Daemon) stopEnergy() {
	es := d.energy
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.cancel != nil {
		es.cancel()
	}
}

// energyReloaded logs that [energy] changes wait for a restart.
func (d *Daemon) energyReloaded(cfg *config.File) {
	if !reflect.DeepEqual(cfg.Energy, d.energy.cfg) {
		d.log.Warn("energy settings changed; they apply at the next start")
	}
}

// EnergyMeter returns the process's energy meter.
func (d *Daemon) EnergyMeter() *telemetry.Meter { return d.energy.meter }

// carbonRouting returns the balance options of a cluster's carbon policy
// and locality: guardrails, the intensity adapter and the local zone.
func (d *Daemon) carbonRouting(c config.Cluster) (balance.CarbonOptions, balance.IntensitySource) {
	cc := c.Carbon
	rj := cc.RequestJoules
	if rj == 0 {
		rj = c.Energy.JoulesPerRequest
	}
	return balance.CarbonOptions{
		Interval: cc.Interval.Duration, MaxAddedLatency: cc.MaxAddedLatency.Duration,
		MaxShareChange: cc.MaxShareChange, MinShare: cc.MinShare, IntensityScale: cc.IntensityScale,
		LatencyCost: cc.LatencyCost, RequestJoules: rj,
	}, d.CarbonIntensity()
}

// upstreamEnergy is a cluster's upstream energy model.
func upstreamEnergy(c config.Cluster) proxy.UpstreamEnergy {
	return proxy.UpstreamEnergy{JoulesPerRequest: c.Energy.JoulesPerRequest, Watts: c.Energy.Watts}
}

// routeMeter adapts the telemetry meter to the proxy's EnergyMeter.
func (es *energyState) routeMeter(route string) proxy.EnergyMeter {
	if es == nil || es.meter == nil {
		return nil
	}
	return routeEnergy{es.meter.Route(route)}
}

type routeEnergy struct{ m *telemetry.RouteMeter }

func (r routeEnergy) Observe(s proxy.EnergySample) float64 {
	return r.m.Observe(telemetry.Observation(s))
}
