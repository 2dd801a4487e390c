# SPDX-License-Identifier: Apache-2.0
# What both labs' VMs share (the classic two-host lab in ./Vagrantfile and the k3s cluster in
# ./k3s/Vagrantfile): the box, the project synced in at /ebpfnet without what each VM builds for
# itself (node_modules holds a native koffi build), and the size of a VM on either provider.

EBPFNET_BOX = ENV.fetch("EBPFNET_BOX", "bento/ubuntu-24.04")

# project: the checkout's root as seen from the Vagrantfile; memory: MiB per VM
def ebpfnet_lab(config, project:, memory:)
  config.vm.box = EBPFNET_BOX
  config.vm.synced_folder project, "/ebpfnet", type: "rsync",
    rsync__exclude: [".git/", "node_modules/", "dist/", "build/", "vagrant/.vagrant/", "vagrant/k3s/.vagrant/"]
  # the default /vagrant share is not needed (the project is at /ebpfnet)
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider "virtualbox" do |vb|
    vb.cpus = 2
    vb.memory = memory
  end
  config.vm.provider "libvirt" do |lv|
    lv.cpus = 2
    lv.memory = memory
  end
end
