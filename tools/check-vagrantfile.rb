# SPDX-License-Identifier: Apache-2.0
# Evaluates a Vagrantfile against a recording stand-in for Vagrant (CI has no Vagrant and no VMs), so
# a broken require, a typo'd name or a VM without the project synced in fails here, not on a
# user's `vagrant up`.   ruby tools/check-vagrantfile.rb vagrant/Vagrantfile
class Recorder
  attr_reader :calls

  def initialize(calls, path) = (@calls, @path = calls, path)

  def method_missing(name, *args, **kw, &blk)
    path = "#{@path}.#{name}"
    @calls << [path, args, kw]
    blk&.call(Recorder.new(@calls, "#{path}(#{args.first})"))
    Recorder.new(@calls, path)
  end

  def respond_to_missing?(*) = true
end

module Vagrant
  def self.configure(_version)
    calls = []
    yield Recorder.new(calls, "config")
    @calls = calls
  end

  def self.calls = @calls
end

file = File.expand_path(ARGV.fetch(0))
Dir.chdir(File.dirname(file)) { load file }
calls = Vagrant.calls or abort "#{file}: never calls Vagrant.configure"
has = ->(path, &ok) { calls.any? { |p, a, k| p == path && (!ok || ok.call(a, k)) } }
abort "#{file}: sets no box" unless has.("config.vm.box=")
abort "#{file}: does not sync the project to /ebpfnet" unless has.("config.vm.synced_folder") { |a, _| a[1] == "/ebpfnet" && File.exist?(File.join(File.dirname(file), a[0], "package.json")) }
vms = calls.select { |p, _| p == "config.vm.define" }.map { |_, a| a[0] }
abort "#{file}: defines no VM" if vms.empty?
abort "#{file}: a VM without a provisioning script" unless vms.all? { |v| has.("config.vm.define(#{v}).vm.provision") }
puts "#{ARGV[0]}: #{vms.join(', ')} (#{calls.size} settings)"
